"""Input data: preprocessing and the sources that evaluation (and later training) reads."""
