//! Test-only: the in-process network tests (`tests/`), benchmarks
//! (`benches/`) and the fake engine (`examples/`) run `kokon-node`'s
//! [`LocalNet`]; this crate re-exports it so they read `kokon_testnet::…`.
//! Production crates depend on `kokon-node`, never on this one.

pub use kokon_node::*;
