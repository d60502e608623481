//! sousuo-web
