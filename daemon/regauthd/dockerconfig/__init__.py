"""The Docker config: which key means which registry, what a config needs, where the secret
lives, and the race-safe file layer that reads and saves it."""
