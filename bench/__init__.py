"""Side-by-side benchmark of the segstream worker on a real local broker (`make bench`)."""
