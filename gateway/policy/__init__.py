"""What a caller may see and why: rights per client × purpose × check, and the consent registry."""
