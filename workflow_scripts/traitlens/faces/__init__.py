"""Faces (rules/faces.smk): mediapipe detection, landmarks, eye alignment, the face template."""
