"""The audit log: who changed what admin-owned data, when, with the state before and after."""
