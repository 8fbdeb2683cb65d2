//! The scripted provider.
