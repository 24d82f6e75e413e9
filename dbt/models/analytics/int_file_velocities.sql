-- Per file, split and MIDI velocity: its pitched notes. The additive part of
-- velocity_distribution.
{{ per_file_note_counts('velocity') }}
