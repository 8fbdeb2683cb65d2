//! Frontends that fold the event stream: the live terminal view (`view`
//! folds, `render` draws, `live` runs it on the bus or a followed journal),
//! plain progress lines, JSONL, the metrics fold, and the desktop
//! notification when a mission ends. They observe; they never influence a
//! session or a mission.

pub mod follow;
pub mod jsonl;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod plain;
pub mod render;
pub mod terminal;
pub mod view;
