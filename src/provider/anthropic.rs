//! Anthropic Messages client.
use tokio_util::sync::CancellationToken;

use super::{EventStream, HttpSettings, ModelClient, ModelRequest};

pub struct AnthropicClient {
    #[allow(dead_code)]
    settings: HttpSettings,
}

impl AnthropicClient {
    pub fn new(settings: HttpSettings) -> Self {
        AnthropicClient { settings }
    }
}

impl ModelClient for AnthropicClient {
    fn provider(&self) -> &'static str {
        "anthropic"
    }

    fn stream(&self, _request: ModelRequest, _cancel: CancellationToken) -> EventStream {
        Box::pin(futures::stream::empty())
    }
}
