"""A local, faithful WhatsApp Cloud API: sends, errors, limits, windows and signed webhooks."""
