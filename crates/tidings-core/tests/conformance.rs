//! The in-memory transport runs the whole conformance suite, on tokio's virtual clock.

use std::sync::Arc;

use tidings::memory::MemoryTransport;
use tidings::transport::Transport;
use tidings_testkit::{Harness, conformance_suite};

/// Each test gets its own transport; "another process" is a clone sharing its queues.
struct Memory {
    transport: MemoryTransport,
}

impl Memory {
    fn new() -> Self {
        Self {
            transport: MemoryTransport::new(),
        }
    }
}

#[async_trait::async_trait]
impl Harness for Memory {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.transport.clone())
    }
}

conformance_suite!(Memory::new(), start_paused = true);
