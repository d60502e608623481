//! sousuo-query
