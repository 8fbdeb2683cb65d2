//! A loopback HTTP server that replies with scripted bytes, chunk by chunk.
