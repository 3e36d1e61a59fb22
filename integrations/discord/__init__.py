"""Discord: pull continuations of a conversation into a thread and pick one with a button."""
