"""Types of the C extension (stream_app/_native.c); stream_app.native documents it."""

from confluent_kafka import Producer

def first_signup_records(
    namespace: bytes,
    keys: list[bytes],
    labels: list[int],
    customers: list[bytes],
    sources: list[bytes],
    ages: list[float],
    incomes: list[float],
    genders: list[bytes],
    moments: list[bytes],
    state_pieces: list[tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes]],
    change_pieces: list[tuple[bytes, bytes, bytes, bytes, bytes]],
    /,
) -> tuple[list[bytes], list[bytes]] | None: ...
def bind(producer_type: type[Producer], librdkafka_path: str, /) -> None: ...
def produce_columns(
    producer: Producer,
    topic: str,
    keys: list[bytes],
    values: list[bytes],
    partitions: list[int],
    start: int,
    /,
) -> tuple[int, int]: ...
