"""The running service (``regauthd run``): what to watch, the watcher, the loop, sd_notify, and
the daemon itself."""
