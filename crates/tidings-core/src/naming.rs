//! Naming conventions for event types, checked when a type is registered with a bus.
//!
//! A convention is a template of `.`-separated words: `[name]` is a placeholder for one word of
//! lower-case letters, digits, `_` or `-`; anything else must appear literally.
//!
//! ```
//! use tidings_core::naming::NamingConvention;
//!
//! let convention =
//!     NamingConvention::parse("[company].[service].[version].event.[resource].[action]").unwrap();
//! assert!(convention.check("acme.orders.v1.event.order.created").is_ok());
//! let err = convention.check("order.created").unwrap_err();
//! assert!(err.to_string().contains("6 words"));
//! ```

use std::fmt;

/// A template event names must follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamingConvention {
    template: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Placeholder(String),
    Literal(String),
}

impl NamingConvention {
    /// Parses a template such as `[company].[service].[version].event.[resource].[action]`.
    pub fn parse(template: &str) -> Result<Self, NamingError> {
        let segments = template
            .split('.')
            .map(|word| {
                if let Some(name) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                    if name.is_empty() {
                        return Err(NamingError::Template {
                            template: template.to_owned(),
                            reason: "empty placeholder `[]`".into(),
                        });
                    }
                    Ok(Segment::Placeholder(name.to_owned()))
                } else if word.is_empty() || word.contains(['[', ']', '*', '#']) {
                    Err(NamingError::Template {
                        template: template.to_owned(),
                        reason: format!("`{word}` is neither a placeholder nor a literal word"),
                    })
                } else {
                    Ok(Segment::Literal(word.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            template: template.to_owned(),
            segments,
        })
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Checks an event name against the convention.
    pub fn check(&self, name: &str) -> Result<(), NamingError> {
        let violation = |reason: String| NamingError::Violation {
            name: name.to_owned(),
            template: self.template.clone(),
            reason,
        };
        let words: Vec<&str> = name.split('.').collect();
        if words.len() != self.segments.len() {
            return Err(violation(format!(
                "has {} words, the convention has {} words",
                words.len(),
                self.segments.len()
            )));
        }
        for (word, segment) in words.iter().zip(&self.segments) {
            match segment {
                Segment::Literal(lit) if lit != word => {
                    return Err(violation(format!("expected `{lit}` where it has `{word}`")));
                }
                Segment::Placeholder(p) if !is_name_word(word) => {
                    return Err(violation(format!(
                        "`{word}` is not a valid [{p}] (lower-case letters, digits, `_`, `-`)"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_name_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl fmt::Display for NamingConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

/// A naming template that does not parse, or a name that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamingError {
    /// The template itself is malformed.
    #[error("naming convention `{template}` is malformed: {reason}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// A name does not follow the convention.
    #[error("event name `{name}` does not follow `{template}`: it {reason}")]
    Violation {
        /// The offending name.
        name: String,
        /// The convention.
        template: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convention() -> NamingConvention {
        NamingConvention::parse("[company].[service].[version].event.[resource].[action]").unwrap()
    }

    #[test]
    fn literal_words_must_match() {
        let err = convention()
            .check("acme.orders.v1.command.order.create")
            .unwrap_err();
        assert!(err.to_string().contains("expected `event`"), "{err}");
    }

    #[test]
    fn placeholders_take_one_lowercase_word() {
        assert!(
            convention()
                .check("acme.orders.v1.event.order.created")
                .is_ok()
        );
        assert!(
            convention()
                .check("acme.Orders.v1.event.order.created")
                .is_err()
        );
        assert!(convention().check("acme..v1.event.order.created").is_err());
        assert!(
            convention()
                .check("acme.order-svc.v1.event.order.created")
                .is_ok()
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(NamingConvention::parse("[a].[].b").is_err());
        assert!(NamingConvention::parse("a..b").is_err());
        assert!(NamingConvention::parse("a.*.b").is_err());
    }
}
