"""The slot cache: SQLAlchemy models and the only code that speaks SQL to them."""
