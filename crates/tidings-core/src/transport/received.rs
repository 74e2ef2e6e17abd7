use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::Undecodable;
use crate::codec::{Codec, DecodeError, Legacy, StructuredJson, decode_json};
use crate::envelope::Envelope;

/// A message body as it arrived, read into an [`Envelope`] when first asked.
///
/// Transports keep what they receive in one of these instead of decoding it at once, so
/// that a typed handler can read the envelope and its data in one pass
/// ([`read_with_data`](Received::read_with_data)); anyone else gets the envelope from
/// [`envelope`](Received::envelope), read on the first call and kept.
///
/// ```
/// use tidings_core::transport::Received;
///
/// let body = br#"{"specversion":"1.0","id":"1","source":"oms","type":"order.created",
///     "data":{"total":12.5}}"#;
/// let received = Received::json(body.to_vec().into(), None);
/// let total = received.read_with_data::<serde_json::Value>(|_| true).unwrap()["total"].clone();
/// assert_eq!(total, 12.5);
/// // The envelope was read in that same pass.
/// assert_eq!(received.envelope().unwrap().ty, "order.created");
///
/// let junk = Received::json(b"{".to_vec().into(), Some("text/plain".into()));
/// assert_eq!(junk.envelope().unwrap_err().content_type.as_deref(), Some("text/plain"));
/// ```
pub struct Received {
    body: Bytes,
    content_type: Option<String>,
    form: Form,
    envelope: OnceLock<Result<Arc<Envelope>, Undecodable>>,
}

/// How the envelope is read from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// CloudEvents structured JSON, or the legacy flat envelope when it has no
    /// `specversion` ([`decode_json`]).
    Json,
    /// CloudEvents structured JSON only.
    Structured,
    /// The legacy flat envelope only.
    Legacy,
    /// Read already (a binary-mode message, whose attributes are headers).
    Read,
}

impl Received {
    /// A JSON body whose form is not declared: CloudEvents structured JSON, or the legacy
    /// flat envelope when it has no `specversion` ([`decode_json`]).
    pub fn json(body: Bytes, content_type: Option<String>) -> Self {
        Self::new(body, content_type, Form::Json)
    }

    /// A CloudEvents structured JSON body.
    pub fn structured(body: Bytes, content_type: Option<String>) -> Self {
        Self::new(body, content_type, Form::Structured)
    }

    /// A body stored with its content type, as the database-backed queues keep them: the
    /// legacy flat envelope under [`Legacy`]'s content type, structured JSON otherwise (what
    /// [`decode_stored`](super::decode_stored) reads).
    pub fn stored(body: Bytes, content_type: Option<String>) -> Self {
        let form = match content_type.as_deref() {
            Some(t) if t == Legacy.content_type() => Form::Legacy,
            _ => Form::Structured,
        };
        Self::new(body, content_type, form)
    }

    /// A message read already, from its body and headers (a binary-mode message, say):
    /// `body` and `content_type` are what [`Undecodable`] reports when it was not an event.
    pub fn read(
        body: Bytes,
        content_type: Option<String>,
        read: Result<Envelope, DecodeError>,
    ) -> Self {
        let received = Self::new(body, content_type, Form::Read);
        let read = read
            .map(Arc::new)
            .map_err(|error| received.undecodable(error));
        let _ = received.envelope.set(read);
        received
    }

    fn new(body: Bytes, content_type: Option<String>, form: Form) -> Self {
        Self {
            body,
            content_type,
            form,
            envelope: OnceLock::new(),
        }
    }

    /// The body as it arrived.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Its declared media type.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The event, read on the first call, or why the body is not one.
    pub fn envelope(&self) -> Result<&Arc<Envelope>, &Undecodable> {
        self.envelope
            .get_or_init(|| {
                let read = match self.form {
                    Form::Json => decode_json(&self.body),
                    Form::Structured => StructuredJson.decode(&self.body),
                    Form::Legacy => Legacy.decode(&self.body),
                    Form::Read => unreachable!("a body read already has its envelope"),
                };
                read.map(Arc::new).map_err(|error| self.undecodable(error))
            })
            .as_ref()
    }

    /// Reads the envelope and its data as a `T` in one pass
    /// ([`StructuredJson::decode_with_data`]), when the envelope has not been read yet and
    /// the body is structured JSON with data a `T` reads. The envelope is kept whether or
    /// not `accept` takes the data read with it (a `T` of another version than the
    /// envelope's, say, is not to be used as it is).
    ///
    /// `None` when this does not apply or `accept` refuses: read the data from
    /// [`envelope`](Received::envelope) then, which also says what is wrong with a body that
    /// is not an event.
    pub fn read_with_data<T: DeserializeOwned>(
        &self,
        accept: impl FnOnce(&Envelope) -> bool,
    ) -> Option<T> {
        if self.form == Form::Legacy || self.envelope.get().is_some() {
            return None;
        }
        let (envelope, data) = StructuredJson.decode_with_data::<T>(&self.body)?;
        let accepted = accept(&envelope);
        // Only the first read is kept, should two run at once; the other's data is of an
        // envelope read from the same body, the same.
        let _ = self.envelope.set(Ok(Arc::new(envelope)));
        accepted.then_some(data)
    }

    fn undecodable(&self, error: DecodeError) -> Undecodable {
        Undecodable {
            error,
            body: self.body.clone(),
            content_type: self.content_type.clone(),
        }
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Received");
        match self.envelope.get() {
            Some(Ok(envelope)) => out.field("id", &envelope.id).field("type", &envelope.ty),
            Some(Err(undecodable)) => out.field("undecodable", &undecodable.error),
            None => out.field("bytes", &self.body.len()),
        };
        out.finish_non_exhaustive()
    }
}
