use std::collections::HashMap;
use std::sync::RwLock;

use tidings_core::naming::{NamingConvention, NamingError};

/// Event types a bus publishes or consumes, checked against its naming convention once, when
/// first registered.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    convention: Option<NamingConvention>,
    types: RwLock<HashMap<&'static str, u32>>,
}

impl Registry {
    pub(crate) fn new(convention: Option<NamingConvention>) -> Self {
        Self {
            convention,
            types: RwLock::default(),
        }
    }

    pub(crate) fn register(&self, name: &'static str, version: u32) -> Result<(), NamingError> {
        if self.types.read().expect("registry lock").contains_key(name) {
            return Ok(());
        }
        self.check(name)?;
        self.types
            .write()
            .expect("registry lock")
            .insert(name, version);
        Ok(())
    }

    pub(crate) fn check(&self, name: &str) -> Result<(), NamingError> {
        match &self.convention {
            Some(convention) => convention.check(name),
            None => Ok(()),
        }
    }

    /// Registered types and their versions, sorted by name.
    pub(crate) fn types(&self) -> Vec<(&'static str, u32)> {
        let mut types: Vec<_> = self
            .types
            .read()
            .expect("registry lock")
            .iter()
            .map(|(n, v)| (*n, *v))
            .collect();
        types.sort_unstable();
        types
    }
}
