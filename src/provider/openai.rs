//! OpenAI-compatible Chat Completions client.
use tokio_util::sync::CancellationToken;

use super::{EventStream, HttpSettings, ModelClient, ModelRequest};

pub struct OpenAiClient {
    #[allow(dead_code)]
    settings: HttpSettings,
}

impl OpenAiClient {
    pub fn new(settings: HttpSettings) -> Self {
        OpenAiClient { settings }
    }
}

impl ModelClient for OpenAiClient {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn stream(&self, _request: ModelRequest, _cancel: CancellationToken) -> EventStream {
        Box::pin(futures::stream::empty())
    }
}
