/*
 * The customer-state path of the data plane, per record, in C; stream_app.native is its
 * Python side. A batch it declines (a number whose repr has an exponent, which pydantic writes
 * otherwise) goes one record at a time through stream_app.audiences' general path.
 *
 * first_signup_records: the state and the change record of a batch of first signups, each
 *     the pieces of its segment's template with the customer's fields between them, and the
 *     change's uuid5 id made with OpenSSL's SHA-1.
 * produce_columns: a column of header-less records handed to librdkafka's rd_kafka_produce,
 *     on the rd_kafka_t of a confluent-kafka Producer. That handle is the first field of
 *     confluent-kafka's `Handle` struct (src/confluent_kafka/src/confluent_kafka.h); the
 *     library is the one confluent-kafka loaded, found by `bind`. pyproject.toml pins
 *     confluent-kafka exactly and the worker refuses other versions (stream_app.pins).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* SHA1(), the one-shot call: deprecated in OpenSSL 3, and its cheapest. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

/* ---- first signups ------------------------------------------------------------------------ */

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Buffer;

static int buffer_add(Buffer *buffer, const char *text, Py_ssize_t size) {
    if (buffer->size + size > buffer->capacity) {
        Py_ssize_t capacity = (buffer->size + size) * 2;
        char *data = PyMem_Realloc(buffer->data, capacity);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        buffer->data = data;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, text, size);
    buffer->size += size;
    return 0;
}

/* pieces[0] fields[0] pieces[1] ... fields[n-1] pieces[n], as a new bytes object. */
static PyObject *fill(Buffer *buffer, PyObject *pieces, const char **fields,
                      const Py_ssize_t *sizes, Py_ssize_t count) {
    buffer->size = 0;
    for (Py_ssize_t i = 0; i <= count; i++) {
        PyObject *piece = PyTuple_GET_ITEM(pieces, i);
        if (buffer_add(buffer, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece)) < 0)
            return NULL;
        if (i < count && buffer_add(buffer, fields[i], sizes[i]) < 0)
            return NULL;
    }
    return PyBytes_FromStringAndSize(buffer->data, buffer->size);
}

static const char HEX[] = "0123456789abcdef";

/* str(uuid.uuid5(namespace, name + "\x1f1")) (RFC 9562 section 5.5), 36 characters. */
static int first_change_id(const char *namespace, Py_ssize_t namespace_size, const char *name,
                           Py_ssize_t name_size, char *out) {
    unsigned char text[512], digest[SHA_DIGEST_LENGTH];
    Py_ssize_t size = namespace_size + name_size + 2;
    unsigned char *joined = size <= (Py_ssize_t)sizeof text ? text : PyMem_Malloc(size);
    if (joined == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(joined, namespace, namespace_size);
    memcpy(joined + namespace_size, name, name_size);
    memcpy(joined + namespace_size + name_size, "\x1f" "1", 2);
    SHA1(joined, size, digest);
    if (joined != text)
        PyMem_Free(joined);
    digest[6] = (digest[6] & 0x0F) | 0x50; /* version 5 */
    digest[8] = (digest[8] & 0x3F) | 0x80; /* the RFC 4122 variant */
    for (int i = 0, j = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = HEX[digest[i] >> 4];
        out[j++] = HEX[digest[i] & 0x0F];
    }
    return 0;
}

/* repr(value), as pydantic writes a float in [1e-4, 1e16) or 0; 1 outside (no text made). */
static int number(PyObject *item, char **text) {
    double value = PyFloat_AS_DOUBLE(item);
    double magnitude = value < 0 ? -value : value;
    if (!(value == 0 || (magnitude >= 1e-4 && magnitude < 1e16)))
        return 1;
    *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    return *text == NULL ? -1 : 0;
}

static int check_column(PyObject *column, Py_ssize_t count, const char *name,
                        int (*check)(PyObject *)) {
    if (!PyList_Check(column) || PyList_GET_SIZE(column) != count) {
        PyErr_Format(PyExc_ValueError, "%s: a list of %zd items is needed", name, count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!check(PyList_GET_ITEM(column, i))) {
            PyErr_Format(PyExc_TypeError, "%s[%zd]: %s", name, i,
                         Py_TYPE(PyList_GET_ITEM(column, i))->tp_name);
            return -1;
        }
    }
    return 0;
}

static int is_bytes(PyObject *item) { return PyBytes_CheckExact(item); }
static int is_float(PyObject *item) { return PyFloat_CheckExact(item); }
static int is_int(PyObject *item) { return PyLong_CheckExact(item); }

/* A tuple of count bytes objects: the pieces of one template. */
static int is_pieces(PyObject *item, Py_ssize_t count) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != count)
        return 0;
    for (Py_ssize_t i = 0; i < count; i++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(item, i)))
            return 0;
    return 1;
}

static int is_state_pieces(PyObject *item) { return is_pieces(item, 8); }
static int is_change_pieces(PyObject *item) { return is_pieces(item, 5); }

static PyObject *first_signup_records(PyObject *module, PyObject *args) {
    PyObject *namespace, *keys, *labels, *customers, *sources, *ages, *incomes, *genders;
    PyObject *moments, *state_pieces, *change_pieces;
    if (!PyArg_ParseTuple(args, "SOOOOOOOOOO:first_signup_records", &namespace, &keys, &labels,
                          &customers, &sources, &ages, &incomes, &genders, &moments,
                          &state_pieces, &change_pieces))
        return NULL;
    if (!PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "keys: a list is needed");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(keys);
    if (check_column(keys, count, "keys", is_bytes) < 0
        || check_column(labels, count, "labels", is_int) < 0
        || check_column(customers, count, "customers", is_bytes) < 0
        || check_column(sources, count, "sources", is_bytes) < 0
        || check_column(ages, count, "ages", is_float) < 0
        || check_column(incomes, count, "incomes", is_float) < 0
        || check_column(genders, count, "genders", is_bytes) < 0
        || check_column(moments, count, "moments", is_bytes) < 0)
        return NULL;
    if (!PyList_Check(state_pieces) || !PyList_Check(change_pieces)
        || PyList_GET_SIZE(state_pieces) != PyList_GET_SIZE(change_pieces)) {
        PyErr_SetString(PyExc_ValueError, "templates: one state and one change per segment");
        return NULL;
    }
    Py_ssize_t segments = PyList_GET_SIZE(state_pieces);
    if (check_column(state_pieces, segments, "state templates", is_state_pieces) < 0
        || check_column(change_pieces, segments, "change templates", is_change_pieces) < 0)
        return NULL;

    PyObject *states = PyList_New(count), *changes = PyList_New(count), *result = NULL;
    Buffer buffer = {NULL, 0, 0};
    char *age = NULL, *income = NULL;
    if (states == NULL || changes == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        long label = PyLong_AsLong(PyList_GET_ITEM(labels, i));
        if (label < 0 || label >= segments) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "labels[%zd]: no segment %ld", i, label);
            goto done;
        }
        int outside = number(PyList_GET_ITEM(ages, i), &age);
        if (outside == 0)
            outside = number(PyList_GET_ITEM(incomes, i), &income);
        if (outside != 0) {
            if (outside > 0) { /* a number pydantic writes otherwise: the caller's turn */
                result = Py_NewRef(Py_None);
            }
            goto done;
        }
        PyObject *key = PyList_GET_ITEM(keys, i), *customer = PyList_GET_ITEM(customers, i);
        PyObject *source = PyList_GET_ITEM(sources, i), *gender = PyList_GET_ITEM(genders, i);
        PyObject *moment = PyList_GET_ITEM(moments, i);
        const char *state_fields[7] = {
            PyBytes_AS_STRING(customer), age, income, PyBytes_AS_STRING(gender),
            PyBytes_AS_STRING(moment), PyBytes_AS_STRING(moment), PyBytes_AS_STRING(source),
        };
        Py_ssize_t state_sizes[7] = {
            PyBytes_GET_SIZE(customer), (Py_ssize_t)strlen(age), (Py_ssize_t)strlen(income),
            PyBytes_GET_SIZE(gender), PyBytes_GET_SIZE(moment), PyBytes_GET_SIZE(moment),
            PyBytes_GET_SIZE(source),
        };
        PyObject *state = fill(&buffer, PyList_GET_ITEM(state_pieces, label), state_fields,
                               state_sizes, 7);
        PyMem_Free(age);
        PyMem_Free(income);
        age = income = NULL;
        if (state == NULL)
            goto done;
        PyList_SET_ITEM(states, i, state);
        char id[36];
        if (first_change_id(PyBytes_AS_STRING(namespace), PyBytes_GET_SIZE(namespace),
                            PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), id) < 0)
            goto done;
        const char *change_fields[4] = {
            id, PyBytes_AS_STRING(customer), PyBytes_AS_STRING(source), PyBytes_AS_STRING(moment),
        };
        Py_ssize_t change_sizes[4] = {
            36, PyBytes_GET_SIZE(customer), PyBytes_GET_SIZE(source), PyBytes_GET_SIZE(moment),
        };
        PyObject *change = fill(&buffer, PyList_GET_ITEM(change_pieces, label), change_fields,
                                change_sizes, 4);
        if (change == NULL)
            goto done;
        PyList_SET_ITEM(changes, i, change);
    }
    result = PyTuple_Pack(2, states, changes);
done:
    PyMem_Free(age);
    PyMem_Free(income);
    PyMem_Free(buffer.data);
    Py_XDECREF(states);
    Py_XDECREF(changes);
    return result;
}

/* ---- producing ---------------------------------------------------------------------------- */

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;

/* The head of confluent-kafka's Handle (confluent_kafka.h): PyObject_HEAD, then rd_kafka_t *rk. */
typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
} Handle;

#define RD_KAFKA_MSG_F_COPY 0x2

static PyObject *producer_type = NULL;
static rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, void *);
static void (*topic_destroy)(rd_kafka_topic_t *);
static int (*produce)(rd_kafka_topic_t *, int32_t, int, void *, size_t, const void *, size_t,
                      void *);
static int (*last_error)(void);

static PyObject *bind(PyObject *module, PyObject *args) {
    PyObject *type;
    const char *path;
    if (!PyArg_ParseTuple(args, "O!s:bind", &PyType_Type, &type, &path))
        return NULL;
    /* The copy confluent-kafka loaded, never a second one: RTLD_NOLOAD. */
    void *library = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL) {
        PyErr_Format(PyExc_ImportError, "librdkafka is not loaded from %s", path);
        return NULL;
    }
    topic_new = dlsym(library, "rd_kafka_topic_new");
    topic_destroy = dlsym(library, "rd_kafka_topic_destroy");
    produce = dlsym(library, "rd_kafka_produce");
    last_error = dlsym(library, "rd_kafka_last_error");
    if (!topic_new || !topic_destroy || !produce || !last_error) {
        topic_new = NULL;
        PyErr_Format(PyExc_ImportError, "%s lacks librdkafka's produce calls", path);
        return NULL;
    }
    Py_XSETREF(producer_type, Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyObject *produce_columns(PyObject *module, PyObject *args) {
    PyObject *producer, *keys, *values, *partitions;
    const char *topic;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OsO!O!O!n:produce_columns", &producer, &topic, &PyList_Type,
                          &keys, &PyList_Type, &values, &PyList_Type, &partitions, &start))
        return NULL;
    if (topic_new == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() was not called");
        return NULL;
    }
    if (!PyObject_TypeCheck(producer, (PyTypeObject *)producer_type)) {
        PyErr_Format(PyExc_TypeError, "a %s is needed, not %s",
                     ((PyTypeObject *)producer_type)->tp_name, Py_TYPE(producer)->tp_name);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(values) != count || PyList_GET_SIZE(partitions) != count) {
        PyErr_SetString(PyExc_ValueError, "keys, values and partitions differ in length");
        return NULL;
    }
    rd_kafka_t *rk = ((Handle *)producer)->rk;
    if (rk == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the producer is closed");
        return NULL;
    }
    rd_kafka_topic_t *rkt = topic_new(rk, topic, NULL);
    if (rkt == NULL)
        return Py_BuildValue("(ni)", start, last_error());
    Py_ssize_t i = start < 0 ? 0 : start;
    int error = 0;
    for (; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i), *value = PyList_GET_ITEM(values, i);
        PyObject *partition = PyList_GET_ITEM(partitions, i);
        if (!PyBytes_CheckExact(value) || !(key == Py_None || PyBytes_CheckExact(key))
            || !PyLong_CheckExact(partition)) {
            PyErr_Format(PyExc_TypeError, "record %zd: bytes key, bytes value, int partition",
                         i);
            break;
        }
        long number = PyLong_AsLong(partition);
        if (number == -1 && PyErr_Occurred())
            break;
        if (produce(rkt, (int32_t)number, RD_KAFKA_MSG_F_COPY, PyBytes_AS_STRING(value),
                    (size_t)PyBytes_GET_SIZE(value), key == Py_None ? NULL : PyBytes_AS_STRING(key),
                    key == Py_None ? 0 : (size_t)PyBytes_GET_SIZE(key), NULL) == -1) {
            error = last_error();
            break;
        }
    }
    topic_destroy(rkt);
    if (PyErr_Occurred())
        return NULL;
    return Py_BuildValue("(ni)", i, error);
}

static PyMethodDef methods[] = {
    {"first_signup_records", first_signup_records, METH_VARARGS,
     "first_signup_records(namespace, keys, labels, customers, sources, ages, incomes, genders, "
     "moments, state_pieces, change_pieces) -> (states, changes), or None when a number's "
     "repr has an exponent"},
    {"bind", bind, METH_VARARGS,
     "bind(producer_type, librdkafka_path): the Producer type and the librdkafka it loaded"},
    {"produce_columns", produce_columns, METH_VARARGS,
     "produce_columns(producer, topic, keys, values, partitions, start) -> (next, error): "
     "produce from start on; next is where it stopped, error librdkafka's code (0: all)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "stream_app._native", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
