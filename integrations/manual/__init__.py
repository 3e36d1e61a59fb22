"""The manual place: text a person types or pastes in the web UI (a new document, a continuation
written by hand, "more like these" at a node)."""
