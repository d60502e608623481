//! sousuo-indexer
