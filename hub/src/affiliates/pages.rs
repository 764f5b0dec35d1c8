//! The affiliates' pages: `/affiliate` (an account's own) and `/affiliates` (the console).
