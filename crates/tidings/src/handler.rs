use std::future::Future;

use futures::future::BoxFuture;
use tidings_core::outcome::HandlerError;

/// An async function that handles one input (an [`Event<T>`](crate::Event) or an
/// `Arc<Envelope>`). Implemented for every `Fn(Input) -> impl Future<Output = Result<(),
/// HandlerError>>` that is `Clone + Send + Sync + 'static`.
pub trait Handler<Input>: Clone + Send + Sync + 'static {
    /// Handles `input`.
    fn call(&self, input: Input) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut, Input> Handler<Input> for F
where
    F: Fn(Input) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn call(&self, input: Input) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin((self)(input))
    }
}
