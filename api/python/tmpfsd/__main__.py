"""``python -m tmpfsd``: print where temporary files would go, and why."""

from . import locate

loc = locate()
for path, why in loc.skipped:
    print(f"skipped {path}: {why}")
print(f"{loc.path} ({loc.source})")
