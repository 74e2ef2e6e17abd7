//! The event types a bus publishes and consumes: their names, versions and schemas.

use std::collections::HashMap;
use std::sync::RwLock;

use tidings_core::DomainEvent;
use tidings_core::naming::{NamingConvention, NamingError};
use tidings_core::schemars::Schema;

/// An event type a bus knows: registered by [`Bus::register`](crate::Bus::register), by
/// publishing it, or by a subscription handling it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventType {
    /// Its name, the CloudEvents `type` and topic.
    pub name: &'static str,
    /// The schema version of its data (`dataversion`).
    pub version: u32,
    /// The JSON Schema of its data ([`DomainEvent::data_schema`]).
    pub schema: Option<Schema>,
    /// Whether this bus published it.
    pub published: bool,
    /// Whether a subscription of this bus handles it.
    pub consumed: bool,
}

/// How a type came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Named ahead of use.
    Declared,
    Published,
    Consumed,
}

/// A type as a subscription registers it when it starts.
#[derive(Clone, Copy)]
pub(crate) struct Registration {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    schema: fn() -> Option<Schema>,
}

impl Registration {
    pub(crate) fn of<T: DomainEvent>() -> Self {
        Self {
            name: T::NAME,
            version: T::VERSION,
            schema: T::data_schema,
        }
    }
}

/// Event types a bus publishes or consumes, checked against its naming convention once, when
/// first registered; one entry per name and version.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    convention: Option<NamingConvention>,
    types: RwLock<HashMap<(&'static str, u32), EventType>>,
}

impl Registry {
    pub(crate) fn new(convention: Option<NamingConvention>) -> Self {
        Self {
            convention,
            types: RwLock::default(),
        }
    }

    /// Registers `registration` in `role`. The schema is described once, on the first
    /// registration of its name and version; publishing a known type only reads the table.
    pub(crate) fn register(
        &self,
        registration: Registration,
        role: Role,
    ) -> Result<(), NamingError> {
        let key = (registration.name, registration.version);
        let has_role = |known: &EventType| match role {
            Role::Declared => true,
            Role::Published => known.published,
            Role::Consumed => known.consumed,
        };
        if self
            .types
            .read()
            .expect("registry lock")
            .get(&key)
            .is_some_and(has_role)
        {
            return Ok(());
        }
        self.check(registration.name)?;
        let mut types = self.types.write().expect("registry lock");
        let known = types.entry(key).or_insert_with(|| EventType {
            name: registration.name,
            version: registration.version,
            schema: (registration.schema)(),
            published: false,
            consumed: false,
        });
        match role {
            Role::Declared => {}
            Role::Published => known.published = true,
            Role::Consumed => known.consumed = true,
        }
        Ok(())
    }

    pub(crate) fn check(&self, name: &str) -> Result<(), NamingError> {
        match &self.convention {
            Some(convention) => convention.check(name),
            None => Ok(()),
        }
    }

    /// Registered types, sorted by name and version.
    pub(crate) fn types(&self) -> Vec<EventType> {
        let mut types: Vec<_> = self
            .types
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        types.sort_unstable_by_key(|t| (t.name, t.version));
        types
    }
}
