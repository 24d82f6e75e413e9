{#- The first render rule a phrase breaks, or null: an expression on int_phrases' columns.
    The rules read the content alone (its size, pitches and note lengths), so every phrase of
    one content breaks the same rule: rejected_phrases lists the phrases that break one, and
    phrase_contents keeps the phrases that break none, each reading only its own rows.

    too_many_notes       more than var max_notes_per_phrase notes in the window
    pitch_out_of_range   a pitch outside [render_pitch_min, render_pitch_max]
    note_too_short       a note shorter than var min_note_beats: a zero-length note (on and
                         off on one tick) is held 0 samples, and the engine sounds nothing
    note_too_long        a note held longer than var max_note_beats (a stuck note) -#}
{% macro render_rule_broken(phrases='phrases') -%}
    case
        when {{ phrases }}.n_notes > {{ var('max_notes_per_phrase') }} then 'too_many_notes'
        when {{ phrases }}.pitch_min < {{ var('render_pitch_min') }}
            or {{ phrases }}.pitch_max > {{ var('render_pitch_max') }} then 'pitch_out_of_range'
        when {{ phrases }}.duration_min_cb / 100.0 < {{ var('min_note_beats') }} then 'note_too_short'
        when {{ phrases }}.duration_max_cb / 100.0 > {{ var('max_note_beats') }} then 'note_too_long'
    end
{%- endmacro %}
