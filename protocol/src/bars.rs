//! Bars: the `Bar` type and the one reader for bar files (MT5 exports and generic CSV), shared by
//! the node and the simulated terminal. Pure: it reads from bytes, never from the file system.
