"""reasoning-gym scoring (filled in below)."""
