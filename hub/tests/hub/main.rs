//! The hub integration tests.
