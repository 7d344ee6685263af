"""Offline analysis of what the sensor captured (print-job forensics, …)."""
