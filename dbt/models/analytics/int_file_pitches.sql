-- Per file, split and MIDI pitch: its pitched notes. The additive part of pitch_distribution.
{{ per_file_note_counts('pitch') }}
