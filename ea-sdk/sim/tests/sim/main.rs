//! The sim's one integration test binary: the shared vectors, the message examples, the
//! conformance suite against a correct and a deliberately broken link, and terminals driving a
//! reference node over real HTTP on 127.0.0.1.

mod conformance;
mod messages;
mod mt5;
mod refnode;
mod terminal;
mod vectors;
