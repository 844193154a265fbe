"""pytest plugin (entry point ``spikenoise``): fixtures and markers for comparison scripts."""
