"""Live news: RSS/Atom feeds fetched on the scheduler, parsed, tagged with symbols and stored."""
