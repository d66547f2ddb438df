"""Who is asking: invitation tokens, passwords, sessions, devices; and the policy."""
