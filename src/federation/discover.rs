//! Server discovery (the Server-Server API, "Resolving server names").
