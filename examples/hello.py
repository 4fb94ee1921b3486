"""The smallest rgrid job: say hello and leave a file behind."""

import os
import platform

print(f"hello from {platform.node()} (execution {os.environ['RGRID_EXECUTION_ID']})")
with open("greeting.txt", "w") as fh:
    fh.write("hello, rgrid\n")
print("wrote greeting.txt")
