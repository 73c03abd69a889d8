//! The agent WebSocket protocol (contract §3). Filled in with the edge.
