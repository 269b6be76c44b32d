"""demo_shop package."""
