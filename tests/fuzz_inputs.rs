//! Fuzzing on the stable toolchain: property tests over arbitrary bytes and over mutated
//! real documents for every reader of input from outside — the manifest loader, the
//! status directory (signed files and their index), the saved plan, and the Expensify
//! response decoder. The property everywhere: never a panic, and either a value or an
//! error that names its file (and field, where one is at fault). Readers of signed
//! input also never take what the key does not vouch for.
//!
//! Each property runs proptest's default 256 cases (`PROPTEST_CASES` for more); the long
//! run and the memory bounds are in docs/development.md "Fuzzing" (the budgets at scale
//! are in `tests/fuzz_memory.rs`).

mod fuzz;
mod support;
