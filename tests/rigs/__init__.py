"""Small, readable rigs that start real components for the integration tests.

Each rig starts its processes itself, on 127.0.0.1 with free ports, inside the test's temp
directory, and stops them by PID. None touches the machine's real ~/.docker, $XDG_RUNTIME_DIR
or /run.
"""
