//! The fuzz targets' parts: `mutate` (what a fuzzer does to a document), `seeds` (the
//! real documents it starts from), and one module per reader.

pub mod loader;
pub mod mutate;
pub mod saved_plan;
pub mod seeds;
pub mod status_dir;
pub mod wire;
