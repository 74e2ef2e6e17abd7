//! Examples of tidings: see `examples/` and run them with `cargo run -p tidings-examples --example <name>`.
