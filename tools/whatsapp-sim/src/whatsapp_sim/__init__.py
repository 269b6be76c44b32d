"""whatsapp_sim package."""
