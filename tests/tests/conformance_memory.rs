//! The conformance suite and the model test against the in-memory backend.

use statekit_backend::memory::MemoryBackend;
use statekit_backend::{InstanceConfig, Result};

struct Memory;

impl statekit_tests::BackendFactory for Memory {
    type Backend = MemoryBackend;

    fn new() -> Self {
        Memory
    }

    fn open(&self, config: InstanceConfig) -> Result<MemoryBackend> {
        MemoryBackend::open(config)
    }
}

statekit_tests::conformance_suite!(Memory);
