"""julia"""
