"""Firmware credential files: what is burned into a device for plug-and-play onboarding."""
