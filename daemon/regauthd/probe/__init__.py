"""Registry probes: does the stored credential authenticate, may it push, how much Hub rate limit
is left; and the daemon's schedule for asking."""
