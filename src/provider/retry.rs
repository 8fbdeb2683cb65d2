//! The retry policy for model requests.
