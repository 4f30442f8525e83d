//! The `X-Matrix` Authorization scheme of federation requests.
